"""Bitbucket Cloud and Data Center: the forges over REST and the Pipelines environment.

`forge` implements `nbci.publish.forge.Forge` for both (and Cloud), `data_center` what Data
Center does its own way, `client` is their session (retries, errors), `context` reads
Bitbucket Pipelines' variables and the flags, `markdown_dialect` says the report in the
markdown Bitbucket renders. Imported only when publishing to Bitbucket.
"""
