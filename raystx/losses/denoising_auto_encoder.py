"""DenoisingAutoEncoderLoss (TSDAE): a decoder reconstructs the original sentence from the embedding of a
damaged copy, which trains the encoder to put the sentence's content into its embedding.

In: pairs ``(damaged_sentence, original_sentence)``, no label; build them with :func:`make_denoising_pairs`
(word deletion, ratio 0.6). Out: the decoder's token-level cross-entropy on the original sentence.
"""

from __future__ import annotations

import logging
import random
import re
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from raystx.losses.base import ColumnContract, RaystxLoss

logger = logging.getLogger(__name__)

_WORD_OR_PUNCT = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")
_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:%)\]}'’])")
_NO_SPACE_AFTER = re.compile(r"([(\[{$]) ")


def delete_words(text: str, del_ratio: float = 0.6, rng: random.Random | None = None) -> str:
    """Drop each word/punctuation token of ``text`` with probability ``del_ratio``; keep at least one.

    Returns the kept tokens joined back into a sentence (no space before closing punctuation). Empty text is
    returned unchanged. ``rng`` makes the noise reproducible.
    """
    rng = rng or random.Random()
    tokens = _WORD_OR_PUNCT.findall(text)
    if not tokens:
        return text
    kept = [tok for tok in tokens if rng.random() > del_ratio]
    if not kept:
        kept = [tokens[rng.randrange(len(tokens))]]
    joined = " ".join(kept)
    return _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", joined))


def make_denoising_pairs(
    sentences: list[str], del_ratio: float = 0.6, seed: int | None = None
) -> dict[str, list[str]]:
    """Columns ``{"damaged": [...], "original": [...]}`` for :class:`DenoisingAutoEncoderLoss`.

    Use as a dataset (e.g. ``datasets.Dataset.from_dict(make_denoising_pairs(texts))``) or inside a
    ``dataset.map(..., batched=True)``; a fresh noise draw per epoch needs a new call per epoch.
    """
    rng = random.Random(seed)
    return {"damaged": [delete_words(s, del_ratio, rng) for s in sentences], "original": list(sentences)}


def find_transformer(model: nn.Module) -> nn.Module:
    """The Hugging Face ``PreTrainedModel`` inside a SentenceTransformer (its first one)."""
    from transformers import PreTrainedModel

    direct = getattr(model, "transformers_model", None)
    if isinstance(direct, PreTrainedModel):
        return direct
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            return module
    raise ValueError(
        "DenoisingAutoEncoderLoss needs a Transformer-based model (e.g. BERT); found no Hugging Face model "
        "inside it (a StaticEmbedding model cannot be used)."
    )


def tie_encoder_to_decoder(encoder: nn.Module, decoder_base: nn.Module) -> int:
    """Make every encoder parameter that has a same-named decoder parameter share the decoder's tensor.

    The decoder's values become the common initialisation. Decoder-only parameters (cross-attention) are
    left alone. Returns how many parameters were tied.
    """
    tied = 0
    for name, parameter in decoder_base.named_parameters():
        module_path, _, attribute = name.rpartition(".")
        try:
            target = encoder.get_submodule(module_path) if module_path else encoder
        except AttributeError:
            continue
        if isinstance(getattr(target, attribute, None), nn.Parameter):
            setattr(target, attribute, parameter)
            tied += 1
    if tied == 0:
        logger.warning("No encoder parameter was tied to the decoder: are they the same architecture?")
    return tied


class DenoisingAutoEncoderLoss(RaystxLoss):
    """TSDAE: decode the original sentence from the sentence embedding of its damaged version.

    The decoder is a causal-LM version of a Hugging Face model (``AutoModelForCausalLM``, cross-attention
    added) that attends to the single sentence embedding. With ``tie_encoder_decoder=True`` (default) it is
    built from the encoder's own checkpoint and shares its weights (the checkpoint path is read from the
    encoder's config, so it works offline on a local model directory); otherwise ``decoder_name_or_path`` is
    loaded and, if its tokenizer differs, the target sentences are re-tokenized for it. The decoder is
    returned by :meth:`trainable_modules`.

    Args:
        model: the SentenceTransformer (encoder) to train.
        decoder_name_or_path: decoder checkpoint; required when ``tie_encoder_decoder=False``.
        tie_encoder_decoder: share encoder and decoder weights.

    Inputs:
        +----------------------------------------------+--------+
        | Texts                                        | Labels |
        +==============================================+========+
        | (damaged_sentence, original_sentence) pairs  | none   |
        +----------------------------------------------+--------+

    Example:
        ::

            from datasets import Dataset
            from raystx.losses import DenoisingAutoEncoderLoss
            from raystx.losses.denoising_auto_encoder import make_denoising_pairs

            train_dataset = Dataset.from_dict(make_denoising_pairs(sentences, del_ratio=0.6, seed=0))
            loss = DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
    """

    contract: ClassVar[ColumnContract] = ColumnContract(2, 2, "none")
    citation: ClassVar[str | None] = """
@inproceedings{wang-2021-TSDAE,
    title = "TSDAE: Using Transformer-based Sequential Denoising Auto-Encoderfor Unsupervised Sentence Embedding Learning",
    author = "Wang, Kexin and Reimers, Nils and Gurevych, Iryna",
    booktitle = "Findings of the Association for Computational Linguistics: EMNLP 2021",
    month = nov,
    year = "2021",
    address = "Punta Cana, Dominican Republic",
    publisher = "Association for Computational Linguistics",
    pages = "671--688",
    url = "https://arxiv.org/abs/2104.06979",
}
"""

    def __init__(
        self, model: nn.Module, decoder_name_or_path: str | None = None, tie_encoder_decoder: bool = True
    ) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        super().__init__(model)
        encoder = find_transformer(model)
        self.tokenizer_encoder = model.tokenizer
        encoder_path = encoder.config.name_or_path
        if tie_encoder_decoder:
            if decoder_name_or_path:
                logger.warning("tie_encoder_decoder=True: decoder_name_or_path is ignored.")
            decoder_name_or_path = encoder_path
        elif not decoder_name_or_path:
            raise ValueError(
                "DenoisingAutoEncoderLoss needs decoder_name_or_path when tie_encoder_decoder=False."
            )
        if not decoder_name_or_path:
            raise ValueError("The encoder's config has no name_or_path to build the tied decoder from.")

        if tie_encoder_decoder:
            self.tokenizer_decoder = self.tokenizer_encoder
        else:
            self.tokenizer_decoder = AutoTokenizer.from_pretrained(decoder_name_or_path)
        self.need_retokenization = not isinstance(self.tokenizer_encoder, type(self.tokenizer_decoder))
        if tie_encoder_decoder and self.need_retokenization:
            raise ValueError("tie_encoder_decoder=True needs the same tokenizer for encoder and decoder.")

        decoder_config = AutoConfig.from_pretrained(decoder_name_or_path)
        decoder_config.is_decoder = True
        decoder_config.add_cross_attention = True
        self.decoder = AutoModelForCausalLM.from_pretrained(decoder_name_or_path, config=decoder_config)
        if encoder.config.hidden_size != decoder_config.hidden_size:
            raise ValueError(
                f"Encoder hidden size {encoder.config.hidden_size} != decoder hidden size {decoder_config.hidden_size}."
            )
        if self.tokenizer_decoder.pad_token is None:  # e.g. GPT-2
            self.tokenizer_decoder.pad_token = self.tokenizer_decoder.eos_token
            self.decoder.config.pad_token_id = self.decoder.config.eos_token_id
        if tie_encoder_decoder:
            if len(self.tokenizer_decoder) > self.decoder.get_input_embeddings().num_embeddings:
                # The encoder's vocabulary was extended: the tied decoder must cover the new tokens.
                self.decoder.resize_token_embeddings(len(self.tokenizer_decoder))
            tie_encoder_to_decoder(encoder, getattr(self.decoder, self.decoder.base_model_prefix))
        self.decoder_name_or_path = decoder_name_or_path
        self.tie_encoder_decoder = tie_encoder_decoder

    @property
    def encoder(self) -> nn.Module:
        """The model being trained (sentence-transformers' attribute name)."""
        return self.model

    def retokenize(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """Decode encoder token ids back to text and tokenize it with the decoder's tokenizer."""
        input_ids = features["input_ids"]
        texts = self.tokenizer_encoder.batch_decode(
            input_ids, skip_special_tokens=True, clean_up_tokenization_spaces=True
        )
        encoded = self.tokenizer_decoder(texts, padding=True, truncation="longest_first", return_tensors="pt")
        return {k: v.to(input_ids.device) for k, v in encoded.items()}

    def reconstruction_loss(self, sentence_embeddings: Tensor, target_ids: Tensor) -> Tensor:
        """Cross-entropy of decoding ``target_ids`` (b, L) from ``sentence_embeddings`` (b, d), teacher-forced.

        The decoder reads tokens ``0 .. L-2`` and predicts ``1 .. L-1``; padding targets are ignored.
        """
        decoder_inputs = target_ids[:, :-1]
        targets = target_ids[:, 1:]
        memory = sentence_embeddings.unsqueeze(1)  # one "token" of encoder output per sentence
        memory_mask = torch.ones(memory.shape[:2], dtype=torch.long, device=memory.device)
        logits = self.decoder(
            input_ids=decoder_inputs,
            encoder_hidden_states=memory,
            encoder_attention_mask=memory_mask,
            use_cache=False,
        ).logits
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=self.tokenizer_decoder.pad_token_id,
        )

    def forward(self, sentence_features: list[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """``sentence_features``: [damaged, original] tokenized by the model. Returns the scalar loss."""
        damaged, original = sentence_features
        if self.need_retokenization:
            original = self.retokenize(original)
        embeddings = self.model(damaged)["sentence_embedding"]
        return self.reconstruction_loss(embeddings, original["input_ids"])

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "decoder_name_or_path": self.decoder_name_or_path,
            "tie_encoder_decoder": self.tie_encoder_decoder,
            "need_retokenization": self.need_retokenization,
        }

    def trainable_modules(self) -> list[nn.Module]:
        return [self.decoder]
