"""pacsflow's DICOM services as an SCP, one module per service (server.py wires them)."""
