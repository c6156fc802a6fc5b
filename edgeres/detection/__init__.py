"""Detection post- and pre-processing in plain numpy: CenterNet decoding and targets, boxes and NMS, COCO mAP,
drawing. The torch side (the network, its losses) lives elsewhere; everything here runs without torch."""
