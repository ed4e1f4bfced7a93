"""Monitoring after deployment: capture + ground-truth merge, quality and drift per window,
operational metrics (Prometheus, CloudWatch EMF) and the HTML report.

Modules: capture (read data capture), ground_truth (ingest labels), merge, baseline, drift,
job (the monitoring job), monitor_job (its processing entry script), operational, report.
"""
