"""Latency, throughput, memory and size benchmarks for artifacts and backends."""
