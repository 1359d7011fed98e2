"""pacsflow's own C-STORE receive path for storage-only associations (beside pynetdicom).

receiver.py negotiates and serves the association, session.py holds one association's
socket and the object arriving, wire.py encodes and decodes PDUs and command sets, and
header.py reads a received object's identifying attributes without pydicom when exact.
"""
