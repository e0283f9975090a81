"""The bus contract: topic names, event schemas and builders, reason codes, CloudEvents headers,
the AI-service catalog."""
