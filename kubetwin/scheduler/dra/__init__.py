"""The structured-parameters DRA allocator (entry point :func:`.allocator.allocate`) and its CEL environment."""
