"""A procedural indoor world for an RC car: the map, a camera renderer with exact masks, textures.

Modules: `parts` (class ids, lighting, obstacles, walls, styles), `map` (`World`, its generator
and `top_down`), `render` (ray casting and the camera lookup), `textures` (the texture atlas).
The car itself (camera, pose, kinematics) is `edgeseg.robot`, shared with real robots.

Only numpy and OpenCV, because the same code makes training data (`SyntheticDataset`), drives the
closed-loop navigation simulator and feeds the `synthetic://` video source on the robot.

Conventions (the simulator and the navigator rely on them):

* World frame: metres, seen from above x points right and y points up; the room spans
  `[0, size_x] x [0, size_y]` and is closed by walls on all four sides.
* `Pose.heading`: radians, counter-clockwise from +x (0 faces +x, pi/2 faces +y).
* The camera looks along the heading; image right is the car's right, i.e. clockwise from the
  heading seen from above.
* `step_pose`: steering > 0 turns RIGHT (clockwise seen from above, towards image right).
* `World.ray_distance` angles: radians relative to the heading, counter-clockwise (left) positive,
  like the heading itself.

How rendering works: the camera has no roll, so a *level* camera (same position, zero pitch) sees
vertical edges as vertical image lines and each of its columns is one horizontal ray. We cast all
columns at once against every solid (analytic ray/circle, ray/box and room intersections), paint
each solid as a row interval of that level image, far to near in each column's own depth order (so
nearer solids cover farther ones and low near obstacles let far walls show above them), and then
look every pixel of the real, pitched camera up in the level image. A pure rotation is a homography, so that lookup is exact up to
the level image's pixel grid (half a pixel). Colours come from one texture atlas sampled at world
coordinates (floor, obstacle tops) or surface coordinates (walls, obstacle sides), so textures stay
put when the car moves. The mask is the class of the surface each pixel shows.
"""

from edgeseg.robot import Camera, Pose
from edgeseg.world.map import World, top_down
from edgeseg.world.parts import (
    BACKGROUND, BACKGROUND_KINDS, FLOOR, FLOOR_KINDS, OBSTACLE, OBSTACLE_SHAPES, OBSTACLE_TEXTURES, RGB, WALL,
    WALL_KINDS, BackgroundStyle, FloorStyle, Lighting, Obstacle, WallSegment, WallStyle,
)

__all__ = [
    "BACKGROUND",
    "BACKGROUND_KINDS",
    "BackgroundStyle",
    "Camera",
    "FLOOR",
    "FLOOR_KINDS",
    "FloorStyle",
    "Lighting",
    "OBSTACLE",
    "OBSTACLE_SHAPES",
    "OBSTACLE_TEXTURES",
    "Obstacle",
    "Pose",
    "RGB",
    "WALL",
    "WALL_KINDS",
    "WallSegment",
    "WallStyle",
    "World",
    "top_down",
]
