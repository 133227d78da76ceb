"""Scripts that generate lt2 example models and their golden fixtures."""
