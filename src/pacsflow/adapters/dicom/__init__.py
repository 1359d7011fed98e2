"""DICOM adapter: pynetdicom SCPs and SCUs, Dataset translation and DICOM status codes."""
