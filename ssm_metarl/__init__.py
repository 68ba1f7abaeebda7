"""ssm-metarl."""
