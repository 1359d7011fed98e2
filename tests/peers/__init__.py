"""Real third-party peers (Orthanc) that tests start, configure and stop themselves."""
