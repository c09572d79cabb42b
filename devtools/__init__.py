"""Developer tooling (throwaway PostgreSQL clusters for tests, the demo and benchmarks); not shipped."""
