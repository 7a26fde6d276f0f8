"""Suite files -> validated, frozen Suite: schema, loading, presets, --set, extends, claim specs."""
