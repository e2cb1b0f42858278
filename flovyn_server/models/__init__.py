"""The one declaration of each request and answer shape: pydantic models for what comes
in (strict, bounded), TypedDicts for what goes out. The API parses with them, the engine
takes and returns them, and the OpenAPI document is built from them."""
