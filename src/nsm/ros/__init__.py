"""ROS 2 nodes: thin rclpy wrappers over the nsm cores. The only package that imports rclpy."""
