import { binaryCandidates } from '../../lib/adapters/store/pg-vector-store';
import { ConfigError } from '../../lib/core/errors';
import { resolveModelSpec } from '../../lib/adapters/models/model-registry';
import { loadConfig } from '../../lib/runtime/config';
import { storedModelId, storeOptions } from '../../lib/runtime/product';

describe('configuration is validated once, every bad value reported together', () => {
  it.each([
    ['OMPF_MAX_PIXELS', 'NaN'],
    ['OMPF_MAX_IMAGE_BYTES', 'Infinity'],
    ['OMPF_BATCH_SIZE', '-Infinity'],
    ['OMPF_POWER', 'NaN'],
    ['OMPF_QUERY_EXPANSION', '1e1'],
    ['OMPF_THREADS', '2.5'],
    ['OMPF_DBA', '11'],
    ['OMPF_DBA', '-1'],
    ['OMPF_DBA', '2.5'],
    ['OMPF_BINARY_OVERSAMPLING', '0'],
    ['OMPF_BINARY_OVERSAMPLING', '101'],
    ['OMPF_MODEL_BASE_URL', 'huggingface.co/onnxmodelzoo'],
    ['OMPF_MODEL_BASE_URL', 'ftp://mirror.example/models'],
    ['OMPF_POOLING', 'max'],
    ['OMPF_GEM_POWER', '0.5'],
    ['OMPF_GEM_POWER', '9'],
    ['OMPF_FRAMING', 'portrait'],
    ['OMPF_RERANK', '501'],
    ['OMPF_RERANK', '-1'],
  ])('refuses %s=%s', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(name));
  });

  it('lists all problems in one error, and treats empty values as unset', () => {
    const attempt = () =>
      loadConfig({ OMPF_MAX_PIXELS: 'NaN', OMPF_POWER: 'Infinity', OMPF_FLIP: 'yes', OMPF_MODEL: '' });
    expect(attempt).toThrow(/OMPF_MAX_PIXELS.*OMPF_FLIP.*OMPF_POWER|OMPF_MAX_PIXELS.*OMPF_POWER.*OMPF_FLIP/);
    expect(loadConfig({ OMPF_MODEL: '' }).model).toBe('resnet50');
  });

  it('names the descriptor in the stored model id, and keeps re-ranking (query time) out of it', () => {
    const spec = resolveModelSpec('mobilenetv2-int8');
    expect(storedModelId(spec, loadConfig({ OMPF_FRAMING: 'crop', OMPF_POOLING: 'average' }))).toBe(
      'mobilenetv2-int8+dba3',
    );
    expect(storedModelId(spec, loadConfig({ OMPF_GEM_POWER: '4', OMPF_FRAMING: 'squash' }))).toBe(
      'mobilenetv2-int8+squash+gem4+dba3',
    );
    expect(storedModelId(spec, loadConfig({ OMPF_RERANK: '0' }))).toBe(storedModelId(spec, loadConfig({})));
    expect(loadConfig({}).rerank).toBe(100);
  });

  it('downloads built-in models from the Hugging Face onnxmodelzoo organisation unless told otherwise', () => {
    expect(loadConfig({}).modelBaseUrl).toBe('https://huggingface.co/onnxmodelzoo');
    expect(loadConfig({ OMPF_MODEL_BASE_URL: 'http://mirror.lan:8080/zoo' }).modelBaseUrl).toBe(
      'http://mirror.lan:8080/zoo',
    );
  });

  it('turns database-side augmentation on by default (k=3), recorded in the stored model id', () => {
    expect(loadConfig({}).dba).toBe(3);
    expect(loadConfig({ OMPF_DBA: '0' }).dba).toBe(0);
    const spec = resolveModelSpec('mobilenetv2-int8');
    expect(storedModelId(spec, loadConfig({}))).toBe('mobilenetv2-int8+whole+gem3+dba3');
    expect(storedModelId(spec, loadConfig({ OMPF_DBA: '0' }))).toBe('mobilenetv2-int8+whole+gem3');
    expect(storedModelId(spec, loadConfig({ OMPF_FLIP: '1', OMPF_DBA: '5' }))).toBe(
      'mobilenetv2-int8+whole+gem3+flip+dba5',
    );
    expect(storeOptions(spec, loadConfig({}))).toMatchObject({
      modelId: 'mobilenetv2-int8+whole+gem3+dba3',
      dba: 3,
    });
  });

  it('passes the binary oversampling to the store: 6 per result by default, at least 64 candidates', () => {
    const spec = resolveModelSpec('mobilenetv2-int8');
    expect(storeOptions(spec, loadConfig({})).binaryOversampling).toBe(6);
    const options = storeOptions(spec, loadConfig({ OMPF_BINARY_OVERSAMPLING: '10' }));
    expect(options.binaryOversampling).toBe(10);
    expect(binaryCandidates(10)).toBe(64);
    expect(binaryCandidates(20)).toBe(120);
    expect(binaryCandidates(10, options.binaryOversampling)).toBe(100);
    expect(binaryCandidates(1, 100)).toBe(100);
  });
});
