"""Bitbucket Cloud and Data Center: the forges over REST and the Pipelines environment.

`forge` is what both share (`BitbucketForge`), `cloud` and `data_center` what each API says
its own way, `client` is their session (retries, errors), `context` reads Bitbucket
Pipelines' variables and the flags, `markdown_dialect` says the report in the markdown
Bitbucket renders. Imported only when publishing to Bitbucket.
"""
