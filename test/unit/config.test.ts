import { ConfigError } from '../../lib/core/errors';
import { loadConfig } from '../../lib/runtime/config';

describe('configuration is validated once, every bad value reported together', () => {
  it.each([
    ['OMPF_MAX_PIXELS', 'NaN'],
    ['OMPF_MAX_IMAGE_BYTES', 'Infinity'],
    ['OMPF_BATCH_SIZE', '-Infinity'],
    ['OMPF_POWER', 'NaN'],
    ['OMPF_QUERY_EXPANSION', '1e1'],
    ['OMPF_THREADS', '2.5'],
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
});
