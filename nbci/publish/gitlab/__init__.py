"""GitLab: the forge over python-gitlab and the GitLab CI environment.

`forge` implements `nbci.publish.forge.Forge`, `client` is its session (retries, errors),
`context` reads GitLab CI's variables. Imported only when publishing to GitLab.
"""
