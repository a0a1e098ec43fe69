"""Audio post-processing for the wire: PCM16 conversion, head-of-segment silence trimming."""
