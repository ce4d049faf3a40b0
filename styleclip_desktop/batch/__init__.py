"""Batch work: one recipe applied to many photos (`styleclip-desktop batch`, File > Batch Apply...).

Nothing here imports Ray; the cluster executor lives in `styleclip_desktop.cluster`."""
