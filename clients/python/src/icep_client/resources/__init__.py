"""One helper per resource of the partner API, reached as attributes of `IcepClient`."""
