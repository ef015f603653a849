"""Episode writers (HDF5 now; rosbag2/MCAP and LeRobotDataset converters later)."""
