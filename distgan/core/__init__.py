"""Small pieces every layer uses: the ``type:``-keyed registry and the checks of pretrained-weights files."""
