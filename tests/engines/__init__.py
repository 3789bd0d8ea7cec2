"""Real engines for tests and benchmarks, started on 127.0.0.1 and stopped by process id."""
