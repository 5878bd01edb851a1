"""CLIP's BPE tokenizer, offline, against the reference vocabulary's known ids (OpenAI CLIP's
``clip.tokenize`` and open_clip's give these), and the text tower initialised as open_clip does."""

import pickle

import pytest
import torch

import vitforge.models as m
from vitforge.data.tokenizers import ClipBPETokenizer, make_tokenizer, tokenizer_from_card

KNOWN = {  # text -> ids between start (49406) and end (49407), as the reference gives them
    "a diagram": [320, 22697],
    "A photo of a Dog.": [320, 1125, 539, 320, 1929, 269],
    "a small red triangle at the top left on a striped background": [
        320, 2442, 736, 14615, 536, 518, 1253, 1823, 525, 320, 22192, 5994,
    ],
    "12345 numbers 3.14": [272, 273, 274, 275, 276, 6121, 274, 269, 272, 275],
    "   multiple   spaces\tand\nnewlines  ": [6470, 9006, 537, 1218, 3418],
}  # fmt: skip


def test_known_ids_padding_truncation_and_round_trip() -> None:
    tok = ClipBPETokenizer(context_length=16)
    assert tok.vocab_size == 49408 and (tok.sot, tok.eot, tok.pad) == (49406, 49407, 0)
    for text, ids in KNOWN.items():
        row = tok(text)[0].tolist()
        assert row[: len(ids) + 2] == [49406, *ids, 49407] and set(row[len(ids) + 2 :]) <= {0}, text
    assert tok.decode(tok("A photo of a Dog.")[0]) == "a photo of a dog ."  # lower-cased, as CLIP
    long = tok("x " * 100)[0]
    assert long.shape == (16,) and long[-1] == 49407 and long[0] == 49406  # cut, still ends with EOT
    assert tok("&amp; caf\u00c3\u00a9")[0].tolist()[:4] == tok("& café")[0].tolist()[:4]  # html, ftfy
    with pytest.raises(TypeError, match="caption must be a string"):
        tok([3])


def test_factory_card_and_pickle() -> None:
    tok = make_tokenizer("clip-bpe", 32)
    again = tokenizer_from_card({"tokenizer": tok.config()})
    assert torch.equal(again(["a red star"]), tok(["a red star"]))
    assert len(pickle.dumps(tok)) < 200  # Ray tasks get the context length, not the vocabulary
    assert torch.equal(pickle.loads(pickle.dumps(tok))(["a cat"]), tok(["a cat"]))
    assert tokenizer_from_card({"tokenizer": {"context_length": 8}}).name == "byte"  # cards before clip-bpe
    with pytest.raises(ValueError, match="tokenizer must be one of clip-bpe, byte"):
        make_tokenizer("sentencepiece", 8)


def test_text_tower_init_is_open_clips_depth_scaled_normals() -> None:
    """Residual branches start at open_clip's scale: attention-out and MLP-out std w^-1/2 (2L)^-1/2,
    qkv w^-1/2, MLP-in (2w)^-1/2; pools at the BPE end-of-text id."""
    dim, depth = 256, 6
    vocab, eot = m.TOKENIZERS["clip-bpe"]
    enc = m.TextEncoder(dim, depth, 4, 16, vocab, eot=eot)
    blk = enc.blocks[3]
    for w, std in ((blk.attn.qkv.weight, dim**-0.5), (blk.attn.proj.weight, dim**-0.5 * (2 * depth) ** -0.5),
                   (blk.mlp[0].weight, (2 * dim) ** -0.5), (blk.mlp[2].weight, dim**-0.5 * (2 * depth) ** -0.5),
                   (enc.token_embed.weight, 0.02)):  # fmt: skip
        assert w.std().item() == pytest.approx(std, rel=0.05)
    tok = ClipBPETokenizer(16)
    a = tok(["red circle"])
    b = a.clone()
    b[0, -1] = 320  # after the end-of-text: causal attention keeps it out of the pooled feature
    assert torch.allclose(enc(a), enc(b), atol=1e-6) and not torch.allclose(enc(a), enc(tok(["red square"])))
