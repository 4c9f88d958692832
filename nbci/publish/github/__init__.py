"""GitHub: the forge over PyGithub and the Actions environment.

`forge` implements `nbci.publish.forge.Forge`, `client` is its session (retries, errors),
`context` reads the Actions environment and asks GitHub for the target, `graphql` commits
to the assets branch in one request. Imported only when publishing to GitHub.
"""
