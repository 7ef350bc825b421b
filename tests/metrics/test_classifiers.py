"""Metrics feature nets by config: a torchvision classifier from a local weights file."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brain2img.metrics.classifiers import TorchvisionClassifier, build_feature_net


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=1000).eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_torchvision_classifier_gives_pooled_and_logits(resnet_weights):
    reference, path = resnet_weights
    net = build_feature_net("torchvision", name="resnet18", weights_path=str(path), input_size=64)
    images = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    out = net(images)
    assert out["pooled"].shape == (3, 512) and out["logits"].shape == (3, 1000)
    x = F.interpolate(images, size=(64, 64), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        feats = torch.flatten(reference.avgpool(reference.layer4(reference.layer3(reference.layer2(reference.layer1(
            reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))))), 1)
        torch.testing.assert_close(out["pooled"], feats, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out["logits"], reference.fc(feats), rtol=1e-4, atol=1e-5)
    net.train()
    assert not net.net.training


def test_classifier_errors_name_the_file(tmp_path, resnet_weights):
    _, path = resnet_weights
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        TorchvisionClassifier("resnet18", tmp_path / "nope.pth")
    with pytest.raises(ValueError, match=r"resnet18.pth.*do not fit torchvision model 'resnet34'"):
        TorchvisionClassifier("resnet34", path)
    with pytest.raises(ValueError, match="unknown metrics classifier kind"):
        build_feature_net("vit")
