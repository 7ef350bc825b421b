"""COCO captions of NSD images and their SD text embeddings: the Osaka method's caption target c."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTextModel, CLIPTokenizer

from brain2img.data import schema
from brain2img.data.nsd.captions import NSDCaptions, annotations_dir, stim_info_file
from brain2img.encoders.caption_embedding import CaptionEmbedder
from brain2img.methods import OsakaMethod
from brain2img.methods.targets import CaptionCondition
from tests.builders.nsd import write_nsd_captions
from tests.builders.sd import write_sd_folder, write_text_encoder


def test_captions_by_73k_id(tmp_path):
    write_nsd_captions(tmp_path)
    captions = NSDCaptions(tmp_path)
    assert captions([4, 0, 5]) == [["image 4 caption 0", "image 4 caption 1"], ["image 0 caption 0"],
                                    ["image 5 caption 0", "image 5 caption 1", "image 5 caption 2"]]


def test_caption_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nsd_stim_info_merged.csv"):
        NSDCaptions(tmp_path)([0])
    write_nsd_captions(tmp_path, skip=(2,))
    captions = NSDCaptions(tmp_path)
    with pytest.raises(ValueError, match=r"73k id 12 is not in .*nsd_stim_info_merged.csv.*12 rows"):
        captions([12])
    with pytest.raises(ValueError, match=r"73k id 2 \(COCO id 500014, train2017\) has no caption in .*"
                                         r"captions_train2017.json"):
        captions([2])
    (annotations_dir(tmp_path) / "captions_val2017.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"captions_val2017\.json' as JSON: JSONDecodeError: .* line 1 column 2"):
        NSDCaptions(tmp_path)([0])
    (annotations_dir(tmp_path) / "captions_val2017.json").unlink()
    with pytest.raises(FileNotFoundError, match="captions_val2017.json' not found"):
        NSDCaptions(tmp_path)([0])


def test_stim_info_errors(tmp_path):
    write_nsd_captions(tmp_path, header=("", "cocoId"))
    with pytest.raises(ValueError, match=r"no column\(s\) \['cocoSplit'\]"):
        NSDCaptions(tmp_path)([0])
    path = stim_info_file(tmp_path)
    lines = path.read_text().splitlines()
    write_nsd_captions(tmp_path)
    lines = path.read_text().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 4: nsdId 3 but this is row 2"):
        NSDCaptions(tmp_path)([0])


def test_caption_embedding_is_the_mean_of_clip_text_states(tmp_path):
    """Against transformers directly: each caption padded to 77 tokens, last_hidden_state, mean per image."""
    write_text_encoder(tmp_path)
    embedder = CaptionEmbedder(tmp_path, batch_size=2)
    captions = [["a dog on a sofa", "two cats"], ["a red bus"], ["x", "y", "a longer caption " * 20]]
    out = embedder(captions)
    assert out.shape == (3, 77, 32)
    tok = CLIPTokenizer.from_pretrained(tmp_path / "tokenizer")
    model = CLIPTextModel.from_pretrained(tmp_path / "text_encoder").eval()
    for row, group in zip(out, captions, strict=True):
        with torch.no_grad():
            states = [model(tok(c, padding="max_length", max_length=77, truncation=True,
                                return_tensors="pt").input_ids).last_hidden_state[0] for c in group]
        torch.testing.assert_close(row, torch.stack(states).mean(0), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match=r"positions \[1\] have no caption"):
        embedder([["a"], []])
    with pytest.raises(FileNotFoundError, match="has no tokenizer/tokenizer_config.json"):
        CaptionEmbedder(tmp_path / "elsewhere")


def test_osaka_regresses_caption_embeddings(tmp_path):
    """c = flattened caption embedding (77 x 32 values for the tiny SD folder); the ridge to c is fitted on it."""
    sd = write_sd_folder(tmp_path / "sd")
    write_nsd_captions(tmp_path / "nsd")
    model = OsakaMethod(brain_shape=(20,), backbone={"preset": "sd", "path": str(sd), "image_size": 16},
                        captions={"root": str(tmp_path / "nsd")}, alphas=(1e-6,), ridge_dtype="float32")
    assert model.backbone.condition_dim == 77 * 32 and model.ridge_c.n_targets == 77 * 32
    assert model.ridge_c.xty.dtype == torch.float32 and model.ridge_c.xtx.dtype == torch.float64
    ids = torch.tensor([0, 4, 5, 7, 8, 10, 11, 1, 2, 3])
    batch = {schema.STIMULUS_ID: ids, schema.IMAGE: torch.rand(len(ids), 3, 16, 16),
             schema.BRAIN: torch.randn(len(ids), 20)}
    _, c = model.targets(batch)
    reference = CaptionCondition(sd, root=tmp_path / "nsd")(batch[schema.IMAGE], ids.tolist())
    torch.testing.assert_close(c, reference)
    # Fewer samples (10) than voxels (20) and a tiny alpha: the ridge interpolates its training targets.
    model.training_step(batch, 0)
    model.ridge_z.fit()
    model.ridge_c.fit()
    _, c_hat = model.predict_targets(batch[schema.BRAIN])
    assert c_hat.shape == (10, 77 * 32)
    torch.testing.assert_close(c_hat, c, rtol=0, atol=1e-3 * float(c.abs().max()))


def test_osaka_caption_settings_are_checked(tmp_path):
    sd = write_sd_folder(tmp_path / "sd", cross_attention_dim=16, text_encoder=False)
    write_text_encoder(tmp_path / "text", hidden=32)
    write_nsd_captions(tmp_path / "nsd")
    backbone = {"preset": "sd", "path": str(sd), "image_size": 16}
    with pytest.raises(ValueError, match=r"caption embeddings have 2464 values .* conditioned on 1232"):
        OsakaMethod(brain_shape=(20,), backbone=backbone,
                    captions={"root": str(tmp_path / "nsd"), "text_encoder": str(tmp_path / "text")})
    with pytest.raises(ValueError, match="captions need a text encoder folder"):
        OsakaMethod(brain_shape=(20,), backbone={"preset": "tiny"}, captions={"root": str(tmp_path / "nsd")})
