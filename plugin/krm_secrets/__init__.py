"""krm-secrets: generate, encrypt and decrypt Kubernetes Secrets as a KRM function."""
