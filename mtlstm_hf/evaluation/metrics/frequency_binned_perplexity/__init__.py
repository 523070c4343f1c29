"""Directory of the ``frequency_binned_perplexity`` evaluate metric; load it with
``evaluate.load(path_to_this_directory)``, not by importing this package."""
