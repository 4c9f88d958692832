"""GitHub: the forge over PyGithub and the Actions environment.

`forge` implements `nbci.publish.forge.Forge`, `client` is its session (retries, errors),
`context` reads the Actions environment and asks GitHub for the target, `graphql` commits
to the assets branch in one request. PyGithub is imported only when publishing to GitHub;
`context.read_artifact_pr` checks a fork's artifact before any forge is chosen.
"""
