"""Wire models for request bodies, named as in the OpenAPI spec. Responses are built by each service's
``*_to_wire`` function; the tests check them against the spec's schemas."""
