"""The GPU path, run on a GPU: the packages a GPU machine lacks (``site.sh``) and the check (``check``)."""
