"""The renderable world around the phantom: materials, table, room and the occluding hand."""

from __future__ import annotations

import numpy as np

from ar_guide.synth import meshes, textures
from ar_guide.synth.phantom import (PLATE_MARGIN_MM, TABLE_TOP_Y, TORSO_HALF_LENGTH, Phantom,
                                    hand_mesh, make_charuco_board, skin_uv)
from ar_guide.synth.raster import Material, SceneObject

#: Floor height (mm, CT y; the table top is 800 mm above it) and the room's half extents.
FLOOR_Y = TABLE_TOP_Y + 800.0
CEILING_Y = FLOOR_Y - 2800.0
ROOM_HALF_X = 2500.0
ROOM_HALF_Z = 3200.0
#: Operating table: width, length, thickness (mm).
TABLE_SIZE = (560.0, 2000.0, 60.0)

HAND = "hand"


def _linear(rgb) -> tuple:
    return tuple(float(c) ** 2.2 for c in rgb)


def build_world(phantom: Phantom, seed: int) -> list[SceneObject]:
    """Scene objects of the video: torso (skin, with the ink cross at the planned entry),
    printed board, plate, post, table, room, and the hand (dynamic, pose per sub-frame)."""
    rng = np.random.default_rng([int(seed), 505])
    skin_tex = textures.skin_texture(rng)
    h, w = skin_tex.shape[:2]
    # Texture resolution on the surface: circumference and length of the torso over the image.
    circumference = 2 * np.pi * 130.0
    textures.draw_ink_cross(skin_tex, skin_uv(phantom.torso_shape, phantom.entry_ct),
                            (w / circumference, h / (2 * TORSO_HALF_LENGTH)))
    board_tex = textures.board_print_texture(make_charuco_board(), phantom.board_size_mm, PLATE_MARGIN_MM)
    white = textures.plain_texture()
    hand = SceneObject(HAND, hand_mesh(), Material(white, tint=_linear(textures.HAND_RGB), specular=0.08,
                                                   shininess=20.0), dynamic=True, closed=True)
    # Front to back (see SceneObject): hand, board, plate, post, torso, table, room.
    objects = [
        hand,
        # Matte laminated print: a weak, broad highlight; sharper mip levels so that oblique
        # views stay crisp (trilinear filtering alone blurs along the foreshortened axis).
        SceneObject("board", phantom.board_print,
                    Material(board_tex, specular=0.04, shininess=12.0, lod_bias=-0.7)),
        SceneObject("plate", phantom.plate, Material(white, tint=_linear((0.35, 0.37, 0.40)), specular=0.15,
                                                     shininess=30.0), closed=True),
        SceneObject("post", phantom.post, Material(white, tint=_linear((0.60, 0.62, 0.64)), specular=0.5,
                                                   shininess=60.0), closed=True),
        SceneObject("skin", phantom.skin, Material(skin_tex, specular=0.06, shininess=20.0), closed=True),
    ]
    return objects + _table_and_room(rng)


def _table_and_room(rng) -> list[SceneObject]:
    tw, tl, tt = TABLE_SIZE
    y0 = TABLE_TOP_Y + 0.5  # just under the torso's flat back
    top = meshes.quad([[-tw / 2, y0, -tl / 2], [tw / 2, y0, -tl / 2], [tw / 2, y0, tl / 2], [-tw / 2, y0, tl / 2]],
                      uv=[(0, 0), (1, 0), (1, 4), (0, 4)])
    body = meshes.box((tw, tt, tl)).transformed(_translation([0.0, y0 + tt / 2 + 0.5, 0.0]))
    drape = textures.drape_texture(rng)
    floor = meshes.quad([[-ROOM_HALF_X, FLOOR_Y, -ROOM_HALF_Z], [ROOM_HALF_X, FLOOR_Y, -ROOM_HALF_Z],
                         [ROOM_HALF_X, FLOOR_Y, ROOM_HALF_Z], [-ROOM_HALF_X, FLOOR_Y, ROOM_HALF_Z]],
                        uv=[(0, 0), (5, 0), (5, 6.4), (0, 6.4)])
    walls = []
    x, z, y1, y2 = ROOM_HALF_X, ROOM_HALF_Z, CEILING_Y, FLOOR_Y
    for a, b in (((-x, -z), (x, -z)), ((x, -z), (x, z)), ((x, z), (-x, z)), ((-x, z), (-x, -z))):
        walls.append(meshes.quad([[a[0], y2, a[1]], [b[0], y2, b[1]], [b[0], y1, b[1]], [a[0], y1, a[1]]],
                                 uv=[(0, 1), (1, 1), (1, 0), (0, 0)]))
    walls.append(meshes.quad([[-x, y1, -z], [x, y1, -z], [x, y1, z], [-x, y1, z]]))
    drape_side = textures.plain_texture(np.asarray(textures.DRAPE_RGB) * 0.9)
    return [
        SceneObject("table_top", top, Material(drape, repeat=True)),
        SceneObject("table", body, Material(drape_side), closed=True),
        SceneObject("floor", floor, Material(textures.floor_texture(rng), repeat=True)),
        SceneObject("walls", meshes.merge(walls), Material(textures.wall_texture(rng))),
    ]


def _translation(t) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = t
    return m
