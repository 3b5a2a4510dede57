"""Pose skeletons drawn by lorawb: keypoints → an OpenPose-style image, the same pixels every time."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lorawb.generate import poses


def test_every_library_pose_draws_the_same_pixels_every_time():
    for name in poses.names():
        a, b = poses.draw(name, 64, 96), poses.draw(name, 64, 96)
        assert a.size == (64, 96) and a.mode == "RGB"
        assert a.tobytes() == b.tobytes()
    # and differently from each other
    digests = {hashlib.sha1(poses.draw(n, 64, 96).tobytes()).hexdigest() for n in poses.names()}
    assert len(digests) == len(poses.names())


def test_the_skeleton_is_openposes_joints_and_limbs_on_black_inside_the_image():
    image = np.asarray(poses.draw("standing", 256, 256))
    assert (image[0, 0] == 0).all() and (image[-1, -1] == 0).all()  # black background
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert set(poses.COLOURS) <= colours  # each joint in its own OpenPose colour
    assert tuple(int(c * poses.LIMB_SHADE) for c in poses.COLOURS[0]) in colours  # limbs shaded
    for p in poses.keypoints(poses.LIBRARY["arms up"], 256, 384):
        assert p is not None and 0 <= p[0] < 256 and 0 <= p[1] < 384


def test_hidden_keypoints_are_not_drawn_and_left_right_follow_the_view():
    back = np.asarray(poses.draw("back view", 128, 128))
    colours = {tuple(c) for c in back.reshape(-1, 3)}
    assert poses.COLOURS[0] not in colours  # no nose from behind
    front = poses.keypoints(poses.LIBRARY["standing"], 128, 128)
    behind = poses.keypoints(poses.LIBRARY["back view"], 128, 128)
    assert front[2][0] < 64 < behind[2][0]  # the right shoulder: image left from the front, right from behind


def test_names_are_found_as_tags_are():
    assert poses.find("Arms_Up").name == "arms up"
    assert poses.find("three quarter view").name == "three-quarter view"
    assert poses.find("cartwheel") is None
    with pytest.raises(ValueError, match="no pose 'cartwheel'"):
        poses.draw("cartwheel", 8, 8)
    with pytest.raises(ValueError, match="18 keypoints"):
        poses.Pose("bad", ((0.0, 0.0),))
