"""Terminal commands: `gemserve chat` (a REPL over the Interactions API) and `gemserve models
list|pull`. cli.py parses the arguments and calls into these modules."""
