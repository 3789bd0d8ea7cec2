"""Protocol test doubles for engines that cannot run on this machine."""
