from nbci.cli import console

console()
