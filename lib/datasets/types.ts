// The in-memory shape of an image dataset, as the loaders and the generator produce it.

/** Images as CIFAR-10 stores them: uint8, one image after another, each channel-major (CHW: 1024 R, 1024 G, 1024 B, row-major). */
export interface ImageSet {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  channels: number;
  height: number;
  width: number;
}

export interface DatasetSplits {
  name: string;
  classNames: string[];
  train: ImageSet;
  val: ImageSet;
  test: ImageSet;
}
