//! Generator of large scenarios for benchmarks (filled in separately).
