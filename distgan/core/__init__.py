"""Small pieces every layer uses: the ``type:``-keyed registry, the checks of pretrained-weights files, and a
process group kept on loopback."""
