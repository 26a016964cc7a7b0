/**
 * What the core needs to know about an embedding model. The file itself is the adapters' business;
 * the core only needs the id (stored with every vector) and the preprocessing contract.
 */
export interface PreprocessSpec {
  /** Shorter side is resized to this before the centre crop (torchvision convention: 256). */
  readonly resizeShorterTo: number;
  /** Side of the square centre crop fed to the network (224 for ResNet50 and MobileNetV2). */
  readonly cropSize: number;
  /** Per-channel mean and std in RGB order, applied after scaling to [0,1]. */
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
  /**
   * How the picture becomes the network's square input: 'crop' (default) resizes the shorter side to
   * resizeShorterTo and cuts the centre cropSize square; 'squash' resizes the whole picture to
   * cropSize x cropSize, aspect not kept, so nothing is cut off and batches stay one shape; 'whole'
   * resizes the shorter side to cropSize and keeps the whole picture, aspect kept (tensors of any shape:
   * the embedder batches equal shapes together).
   */
  readonly framing?: Framing;
}

export type Framing = 'crop' | 'squash' | 'whole';
export const FRAMINGS: readonly Framing[] = ['crop', 'squash', 'whole'];

/**
 * 'whole' framing: the longer side is capped at this multiple of the shorter (cropSize) side; a longer
 * panorama is squashed to it, so one picture cannot make a tensor of unbounded size.
 */
export const MAX_WHOLE_ASPECT = 4;

/** One exact file (bytes and checksum) that is accepted as a model. */
export interface AcceptedModelFile {
  readonly sha256: string;
  readonly sizeBytes?: number;
  /** Where this copy comes from, in words a user can check (shown by `ompf models verify`). */
  readonly origin: string;
}

export interface ModelSpec {
  /** Stable id stored with every embedding. Two different ids are never compared. */
  readonly id: string;
  readonly description: string;
  /** File name inside the models directory, or an absolute path (custom specs). */
  readonly file: string;
  /**
   * The files accepted as this model, and nothing else: first the file its download source serves
   * (what `ompf models pull` installs), then known earlier copies that carry the same weights.
   */
  readonly accepted: readonly [AcceptedModelFile, ...AcceptedModelFile[]];
  /**
   * Built-in models: the file's path under the model download base (OMPF_MODEL_BASE_URL, by default
   * the Hugging Face organisation `onnxmodelzoo`), pinned to an immutable revision.
   */
  readonly downloadPath?: string;
  /** Absolute download locations (custom specs), tried after the one under the download base. */
  readonly urls: readonly string[];
  /** Graph input name; the first graph input when absent. */
  readonly inputName?: string;
  /** Tensor holding the pooled features that feed the classifier; found automatically when absent. */
  readonly featureTensor?: string;
  /** Embedding dimension; checked against the model at load. */
  readonly dimension: number;
  readonly preprocess: PreprocessSpec;
  /**
   * GeM pooling of the last convolutional map with this exponent instead of the model's own pooled
   * output (absent or 0: the model's average pool). Set from configuration (describedSpec), not by files.
   */
  readonly gemPower?: number;
}

export const IMAGENET_PREPROCESS: PreprocessSpec = {
  resizeShorterTo: 256,
  cropSize: 224,
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
};
