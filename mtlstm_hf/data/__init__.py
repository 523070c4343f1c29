"""Data layer: word-level tokenizer, corpus loading, AWD-LSTM style batching.

Depends on tokenizers / transformers / datasets / torch only (not on the model).

Typical use::

    from mtlstm_hf.data import (load_corpus, sample_corpus_dir, build_word_tokenizer,
                                split_to_stream, batchify, BPTTIterator)

    corpus = load_corpus(sample_corpus_dir())            # or a folder, a dict, a Hub id
    tokenizer = build_word_tokenizer(corpus["train"])      # convention "auto": here "wikitext"
    train = batchify(split_to_stream(corpus, "train", tokenizer), batch_size=20)
    for inputs, targets in BPTTIterator(train, bptt=70, variable_length=True, generator=0):
        ...
"""

from .batching import BPTTIterator, batchify, num_dropped_tokens
from .blocks import causal_lm_blocks
from .corpus import (
    CANONICAL_SPLITS,
    TEXT_COLUMN,
    canonical_split,
    dataset_lines,
    encode_lines,
    find_split_files,
    get_split,
    load_corpus,
    read_lines,
    resolve_text_column,
    sample_corpus_dir,
    split_to_stream,
)
from .tokenizer import (
    CONVENTIONS,
    EOS_TOKEN,
    PAD_TOKEN,
    UNK_TOKEN,
    build_vocab,
    build_word_tokenizer,
    check_vocabulary_fingerprint,
    count_words,
    detect_word_convention,
    get_word_convention,
    split_words,
    unknown_word_id,
    vocabulary_fingerprint,
    word_tokenizer_from_vocab,
)

__all__ = [
    "BPTTIterator",
    "CANONICAL_SPLITS",
    "CONVENTIONS",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "TEXT_COLUMN",
    "UNK_TOKEN",
    "batchify",
    "build_vocab",
    "build_word_tokenizer",
    "causal_lm_blocks",
    "check_vocabulary_fingerprint",
    "canonical_split",
    "count_words",
    "dataset_lines",
    "detect_word_convention",
    "encode_lines",
    "find_split_files",
    "get_split",
    "get_word_convention",
    "load_corpus",
    "num_dropped_tokens",
    "read_lines",
    "resolve_text_column",
    "sample_corpus_dir",
    "split_to_stream",
    "split_words",
    "unknown_word_id",
    "vocabulary_fingerprint",
    "word_tokenizer_from_vocab",
]
