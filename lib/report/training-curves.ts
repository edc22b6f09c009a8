// What a run shows in TensorBoard (lib/report/tensorboard.ts writes the event files): the training
// figures at each progress report, stepped by the global batch, and the per-epoch and test figures,
// stepped by the epoch, under tags a PyTorch user would expect.
import type { EpochRecord } from '../run-files';
import type { BatchEvent, EvalResult } from '../trainer';
import type { TensorBoardWriter } from './tensorboard';

export function recordBatch(curves: TensorBoardWriter, e: BatchEvent): void {
  const step = e.epoch * e.batches + e.batch;
  curves.scalar('train/loss', e.loss, step);
  curves.scalar('train/accuracy', e.accuracy, step);
  curves.scalar('train/lr', e.lr, step);
  curves.scalar('train/loss_scale', e.lossScale, step);
  curves.scalar('train/images_per_second', e.imagesPerSecond, step);
}

export function recordEpoch(curves: TensorBoardWriter, r: EpochRecord): void {
  curves.scalar('epoch/train_loss', r.trainLoss, r.epoch);
  curves.scalar('epoch/train_accuracy', r.trainAccuracy, r.epoch);
  curves.scalar('epoch/val_loss', r.valLoss, r.epoch);
  curves.scalar('epoch/val_accuracy', r.valAccuracy, r.epoch);
  curves.scalar('epoch/images_per_second', r.imagesPerSecond, r.epoch);
}

export function recordTest(curves: TensorBoardWriter, test: EvalResult, epoch: number): void {
  curves.scalar('test/loss', test.loss, epoch);
  curves.scalar('test/accuracy', test.accuracy, epoch);
}
