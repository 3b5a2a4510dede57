"""Sentence captions from a transformers image-captioning folder (BLIP, and other image-text-to-text models).

The folder is what ``save_pretrained`` writes: ``config.json``, the weights as
``model.safetensors`` (or a sharded ``model.safetensors.index.json``), the processor's
``preprocessor_config.json`` and the tokenizer's files. ``model_type = "blip"`` loads as
``BlipForConditionalGeneration``; anything else as ``AutoModelForImageTextToText``
(``AutoModelForVision2Seq`` on transformers 4). Nothing is downloaded (local files only).

Safety, as for base models: pickle weights (``pytorch_model.bin``) are refused, and a
folder whose config asks for its own Python code (``auto_map``: Florence-2, JoyCaption
forks...) is refused unless the user passes ``--trust-remote-code``.

The confidence of a caption is the mean probability the model gave the tokens it chose
(greedy decoding), so a caption the model was unsure of shows a low number.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PIL import Image

from lorawb.errors import ModelError
from lorawb.tagger.backends import BackendOptions, file_identity
from lorawb.tagger.labels import CAPTION, Label, Prediction

DEFAULT_QUESTION = "Describe this image in one sentence."  # for chat-style models given no prompt
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model")


def check_folder(folder: Path, trust_remote_code: bool) -> tuple[dict[str, Any], list[Path]]:
    """config.json as read, and the weight files; ModelError says which expected file is missing."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read config.json: {exc}", path=folder / "config.json") from exc
    if config.get("auto_map") and not trust_remote_code:
        raise ModelError(
            "this model runs its own Python code (config.json has auto_map): refused",
            path=folder / "config.json",
            hint="pass --trust-remote-code if you trust the code in this folder",
        )
    weights = sorted(folder.glob("model*.safetensors")) + sorted(folder.glob("model.safetensors.index.json"))
    if not weights:
        pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        if pickles:
            raise ModelError(
                f"only pickle weights here ({', '.join(sorted(pickles))}): refused, they can run code",
                path=folder,
                hint="save the model as safetensors (model.save_pretrained(folder, safe_serialization=True))",
            )
        raise ModelError("no model.safetensors", path=folder, hint=_layout_hint())
    if not any((folder / f).is_file() for f in PROCESSOR_FILES):
        raise ModelError("no preprocessor_config.json (the image processor)", path=folder, hint=_layout_hint())
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise ModelError("no tokenizer files (tokenizer.json or vocab.txt)", path=folder, hint=_layout_hint())
    return config, weights


def _layout_hint() -> str:
    return (
        "a captioning folder is what save_pretrained writes for the model and its processor: config.json, "
        "model.safetensors, preprocessor_config.json, tokenizer.json (or vocab.txt) + tokenizer_config.json"
    )


class CaptionerBackend:
    """A transformers captioning model opened for inference."""

    min_side = None

    def __init__(self, folder: Path, options: BackendOptions) -> None:
        config, weights = check_folder(folder, options.trust_remote_code)
        import torch
        import transformers

        # Loading bars and notices on stderr would draw over the app's screen: errors are raised instead.
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()

        threads = os.environ.get("LORAWB_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            torch.set_num_threads(int(threads))
        self.torch = torch
        cuda = options.device != "cpu" and torch.cuda.is_available()
        if options.device == "cuda" and not cuda:
            raise ModelError("no CUDA device for the captioning model", hint="use --device cpu")
        self.device = torch.device("cuda" if cuda else "cpu")
        dtype = torch.float16 if cuda else torch.float32
        self.is_blip = config.get("model_type") == "blip"
        if self.is_blip:
            cls = transformers.BlipForConditionalGeneration
        else:
            cls = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
        common = {"local_files_only": True, "trust_remote_code": options.trust_remote_code}
        try:
            # transformers 5 calls it dtype; 4.x torch_dtype
            dtype_arg = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": dtype}
            self.model = cls.from_pretrained(folder, use_safetensors=True, **dtype_arg, **common)
            self.processor = transformers.AutoProcessor.from_pretrained(folder, **common)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"transformers cannot load this folder: {exc}", path=folder, hint=_layout_hint()) from exc
        self.model.to(self.device).eval()
        self.prompt = options.prompt
        self.max_new_tokens = options.max_new_tokens
        self.batch_size = options.batch_size
        self.chat = bool(getattr(self.processor, "chat_template", None))
        kind = config.get("model_type", "?")
        self.name = f"{kind} captioner {folder.name} ({self.device.type})"
        files = [folder / "config.json", *weights, *(folder / f for f in PROCESSOR_FILES if (folder / f).is_file())]
        self.key = f"caption:{file_identity(*files)}:{self.prompt!r}:{self.max_new_tokens}"
        self.confidence = f"the mean probability {kind} gave the words of its caption"

    def prepare(self, image: Image.Image) -> Any:
        rgb = image.convert("RGB")
        if self.is_blip:  # BLIP's image processing does not depend on the text: do it in the decode thread
            return self.processor.image_processor(rgb, return_tensors="np")["pixel_values"][0]
        return rgb

    def predict(self, batch: list[Any]) -> list[Prediction]:
        torch = self.torch
        n = len(batch)
        with torch.inference_mode():
            if self.is_blip:
                import numpy as np

                inputs: dict[str, Any] = {"pixel_values": torch.from_numpy(np.stack(batch))}
                if self.prompt:
                    inputs.update(self.processor.tokenizer([self.prompt] * n, return_tensors="pt"))
                    inputs.pop("token_type_ids", None)
                generator = self.model.text_decoder
            else:
                text = self.prompt
                if self.chat:
                    message = [
                        {
                            "role": "user",
                            "content": [{"type": "image"}, {"type": "text", "text": text or DEFAULT_QUESTION}],
                        }
                    ]
                    text = self.processor.apply_chat_template(message, add_generation_prompt=True)
                if text:
                    inputs = dict(self.processor(images=batch, text=[text] * n, return_tensors="pt", padding=True))
                else:  # a plain captioner (GIT, ...): the image alone
                    inputs = dict(self.processor(images=batch, return_tensors="pt"))
                generator = self.model
            inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                output_scores=True,
                return_dict_in_generate=True,
            )
            scores = generator.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        new_tokens = out.sequences[:, -scores.shape[1] :]
        texts = self.processor.batch_decode(self._answers(out.sequences, inputs), skip_special_tokens=True)
        confidences = self._mean_probability(new_tokens, scores)
        preds: list[Prediction] = []
        for text, conf in zip(texts, confidences, strict=True):
            sentence = " ".join(text.replace(",", " ").split())  # one tag: a comma would split it
            preds.append((Label(sentence, conf, CAPTION),) if sentence else ())
        return preds

    def _answers(self, sequences: Any, inputs: dict[str, Any]) -> Any:
        """The generated text only: decoder-only models repeat the prompt first (BLIP's prompt is its caption's start)."""
        if self.is_blip or getattr(self.model.config, "is_encoder_decoder", False) or "input_ids" not in inputs:
            return sequences
        return sequences[:, inputs["input_ids"].shape[1] :]

    def _mean_probability(self, tokens: Any, logprobs: Any) -> list[float]:
        torch = self.torch
        stops = set()
        cfg = getattr(self.model, "generation_config", None)
        for attr in ("eos_token_id", "pad_token_id"):
            v = getattr(cfg, attr, None)
            stops.update(v if isinstance(v, list) else [v] if v is not None else [])
        if self.is_blip:
            stops.update({self.model.config.text_config.sep_token_id, self.model.config.text_config.pad_token_id})
        out = []
        for row_tokens, row in zip(tokens.tolist(), logprobs, strict=True):
            end = next((i for i, t in enumerate(row_tokens) if t in stops), len(row_tokens) - 1)
            probs = torch.exp(row[: end + 1].float())
            out.append(round(float(probs.mean()), 4) if len(probs) else 0.0)
        return out
