"""Library of the pipeline: all logic lives here; stages/ only parse paths and call in."""
