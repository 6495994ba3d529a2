"""Wiring: settings, partitions, jobs, schedules and the one `dg.Definitions`."""
