"""Evaluation on multiple-choice audio benchmarks: question files and their versions (`questions`), scoring with the
benchmark's official rule (`score`), the resumable run and its manifest (`run`), reports (`report`) and checkpoint
sweeps (`sweep`). A benchmark is a declarative description (`benchmarks`); MMAU test-mini is the first."""
