"""Tool calling for engines that render prompts themselves: per-family formats, the grammar
that holds calls to the declared tools, and the parser that reads calls as they stream."""
