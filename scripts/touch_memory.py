#!/usr/bin/env python3
"""Writes one byte to every page of 19 GiB of fresh anonymous memory, then frees it.

This VM's host takes back memory the guest has freed; the first processes to touch it again
pay for every page fault, and a calibration made then falls in its slow mode (README, "The
calibration has two modes"). Run it right before `cargo simulate calibrate` and `validate`:
    python3 scripts/touch_memory.py
Size it to the machine's free memory: GIB below (default 19, for this 24 GiB machine), or the
first argument.
"""
import mmap
import sys

GIB = int(sys.argv[1]) if len(sys.argv) > 1 else 19
n=GIB*1024**3
m=mmap.mmap(-1,n)
step=4096
for i in range(0,n,step): m[i]=1
m.close()
