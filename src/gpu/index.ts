export * from './context';
export * from './errors';
export * from './tensor';
export * from './accounting';
export * from './params';
export * from './grid';
