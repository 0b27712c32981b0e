"""tunewire benchmarks: one script per question (see shared BENCHMARKS rules)."""
