"""Views of what the robot saw and did, in the tools LeRobot and ROS users already have."""
